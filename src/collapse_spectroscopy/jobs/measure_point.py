"""Measuring a trained scan point: its observables and the dataset of its file
(docs/science.md §3-4, §9, §10.1).

One home for what a training job does after training a point (:mod:`.train_job`) and what
``collapse-spectroscopy measure`` does again from a point's saved weights
(:mod:`.remeasure`): the same data references, the same measurement, the same file. So a
point measured again with this version's observables differs from a freshly trained one
only where the observables changed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from collapse_spectroscopy.analysis import modes, observables, pca
from collapse_spectroscopy.models.families import model_spec, numpy_codec
from collapse_spectroscopy.store import scanfile


@dataclass
class DataReferences:
    """What a job measures on the data alone, once for all its points (docs/science.md §4):
    the evaluation split and the PCA references (one eigendecomposition of the training
    covariance)."""

    x_eval: object
    pca_ratio: object
    pca_eval_distortion: object
    pca_eval_ratio: object
    basis: tuple  # pca.pca_basis(x_train): the modes' PCs (docs/science.md §10.1)
    x_train_mean: object  # float64 training mean (modes.measure_modes)

    @classmethod
    def of(cls, ds, eval_split: str) -> DataReferences:
        x_eval = ds.split(eval_split)
        basis = pca.pca_basis(ds.x_train)
        return cls(
            x_eval=x_eval,
            pca_ratio=pca.pca_spectrum(ds.x_train, basis=basis),
            pca_eval_distortion=pca.pca_eval_distortion(ds.x_train, x_eval, basis=basis),
            pca_eval_ratio=pca.pca_eval_ratio(ds.x_train, x_eval, basis=basis),
            basis=basis,
            x_train_mean=modes.training_mean(ds.x_train),
        )


def point_dataset(model, ds, refs: DataReferences, train, *, temperature, seed, attrs: dict):
    """The scan-point dataset of ``model`` (its best weights) measured on the evaluation
    split: the linear model by its closed forms, any other family through its networks
    (docs/science.md §9). ``train`` is the training outcome the file records
    (:class:`.scan_point.TrainResult` or what a point file says of it); ``attrs`` the
    file's attributes, to which the model's spec (``model_spec``) is added."""
    spec = model_spec(model)  # {} for the linear model: its files stay as they were
    if spec:  # no closed form: measure through the networks
        encode, decode = numpy_codec(model)
        obs = observables.measure_decoded(
            encode, decode, refs.x_eval, ds.x_train, seed=seed, x_val=ds.x_val
        )
    else:
        params = model.numpy_params()
        obs = observables.measure(params, refs.x_eval, ds.x_train, seed=seed, x_val=ds.x_val)
    return scanfile.scan_point_dataset(
        temperature=temperature,
        seed=seed,
        obs=obs,
        train=train,
        pca_ratio=refs.pca_ratio,
        pca_eval_distortion=refs.pca_eval_distortion,
        pca_eval_ratio=refs.pca_eval_ratio,
        modes=modes.point_modes(
            model, refs.x_eval, ds.x_train, refs.basis, x_train_mean=refs.x_train_mean
        ),
        true_spectrum=ds.true_spectrum,
        attrs={**attrs, **({"model": spec} if spec else {})},
    )


def job_attrs(*, sigma2, eval_split: str, data, ds, training: dict) -> dict:
    """The attributes a training job gives its points' files."""
    return {
        "sigma2": sigma2,
        "eval_split": eval_split,
        "dataset": os.fspath(data),
        "features": ",".join(ds.feature_names),
        "training": training,
    }
