"""The encoder of an exported model logged once in MLflow, referred to by every model that uses it.

A compressed model is the frozen encoder plus a few small linear maps, so logging each of them
whole would store the same ~90 MB of weights once per model and once more every time `export`
re-runs. `SharedEncoder` is the encoder's sentence-transformers `Transformer` module, except
that saving it writes only `shared_encoder.json`, the `models:/<id>` URI of the encoder logged
once, and loading it fetches that logged model from the tracking store. MLflow's loader
(`mlflow.sentence_transformers.load_model`) gives the model back whole, offline against a local
store.

This file travels inside every model that uses it (Hugging Face's remote-code convention: the
model folder holds `shared_encoder.py` and its `modules.json` names
`shared_encoder.SharedEncoder`, loaded under `trust_remote_code=True`, which MLflow sets), so it
imports nothing of this project: only sentence-transformers and MLflow.
"""

from __future__ import annotations

import json
from pathlib import Path

from sentence_transformers.base.modules.transformer import Transformer

REFERENCE = "shared_encoder.json"
ST_DATA = "model.sentence_transformer"  # where MLflow's flavour keeps the model in a logged model


class SharedEncoder(Transformer):
    """A `Transformer` saved as a reference to a logged sentence-transformers model.

    Example (what `pipeline/export.py` does)::

        info = mlflow.sentence_transformers.log_model(encoder, name="encoder")
        first = SharedEncoder.referring(encoder_folder, info.model_uri)
        model = SentenceTransformer(modules=[first, pooling, normalize, dense])
        mlflow.sentence_transformers.log_model(model, name="smec-96")  # kilobytes, not 90 MB
    """

    model_uri: str = ""

    @classmethod
    def referring(cls, folder: str, model_uri: str) -> SharedEncoder:
        """The transformer saved in `folder`, to be saved as a reference to `model_uri`."""
        if not model_uri.startswith("models:/"):
            raise ValueError(f"model_uri={model_uri!r}: expected a logged model, 'models:/<id>'")
        module = super().load(folder)
        module.model_uri = model_uri
        return module

    def save(self, output_path: str, *args, **kwargs) -> None:
        text = json.dumps({"model_uri": self.model_uri}) + "\n"
        Path(output_path, REFERENCE).write_text(text)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs) -> SharedEncoder:
        import mlflow

        reference = Path(model_name_or_path, subfolder, REFERENCE)
        uri = json.loads(reference.read_text())["model_uri"]
        local = mlflow.artifacts.download_artifacts(uri)
        return cls.referring(str(Path(local) / ST_DATA), uri)
