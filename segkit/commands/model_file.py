"""``--model_file``: a file of ``segkit export`` given to ``segkit eval``, checked against the config's data set."""

from __future__ import annotations


def exported_model(p, cfg, datamodule):
    """The ``--model_file``, checked against the config's data set; test-time options are the file's own."""
    from ..inference.exported import ExportedModel, ModelFileError

    defaults = {"scales": [1.0], "flip": False, "window": None, "pad_to": None, "output_stride": None}
    changed = [f"--{k}" for k, v in defaults.items() if cfg[k] != v]
    if changed:
        p.error(f"{' '.join(changed)}: an exported file runs with the settings baked into it; export it with them")
    model = ExportedModel(cfg.model_file, cfg.device)
    names, ours = model.meta["class_names"], list(datamodule.class_names)
    if names != ours:
        raise ModelFileError(
            f"{cfg.model_file} predicts {len(names)} classes ({', '.join(names[:4])}...), the config's data set "
            f"has {len(ours)} ({', '.join(ours[:4])}...): use the config the model was trained with"
        )
    return model
