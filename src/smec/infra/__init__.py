"""Plumbing every wing may use: atomic writes, the stage CLI, devices, processes, provenance,
MLflow tracking, the team's services, offline plots."""
