"""What people look at and take away: the figures and the exported models."""
