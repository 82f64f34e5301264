"""Pieces of the isotropic-turbulence stage (:mod:`pipelines.turbulence`).

* :mod:`.solver` -- pseudo-spectral forced Navier-Stokes solver (the offline ``synthetic`` source);
* :mod:`.jhtdb` -- JHTDB cutout client and block-wise resumable download (the ``jhtdb`` source);
* :mod:`.downsample` -- block-mean filtering on numpy and dask arrays, and the stride / subcube modes;
* :mod:`.task` -- super-resolution samples and their train / valid / test splits;
* :mod:`.spectra` -- energy spectra and the physical statistics recorded in the metadata.
"""
