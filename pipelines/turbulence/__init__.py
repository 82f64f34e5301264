"""The turbulence stage: isotropic-turbulence super-resolution data (``python -m pipelines.turbulence``).

* :mod:`.stage` -- the stage function and its command line;
* :mod:`.base` -- :class:`~.base.TurbulenceSource`, what every source supplies to the stage;
* :mod:`.sources` -- ``source_for``: the source the params name;
* :mod:`.synthetic` -- ``SyntheticSource``, the solver run as a source;
* :mod:`.cutouts` -- ``JHTDBSource``, the JHTDB download as a source;
* :mod:`.dataset` -- the stored hr / lr dataset, its attributes and the checks before publishing;
* :mod:`.figures` -- spectrum and downsampling-mode figures;

* :mod:`.solver` -- pseudo-spectral forced Navier-Stokes solver (the offline ``synthetic`` source);
* :mod:`.jhtdb` -- JHTDB cutout client and block-wise resumable download (the ``jhtdb`` source);
* :mod:`.jhtdb_payload` -- reply checks, Retry-After, deadlines, token redaction, verified resume pieces;
* :mod:`.downsample` -- block-mean filtering on numpy and dask arrays, and the stride / subcube modes;
* :mod:`.task` -- super-resolution samples and their train / valid / test splits;
* :mod:`.spectra` -- energy spectra and the physical statistics recorded in the metadata.
"""
