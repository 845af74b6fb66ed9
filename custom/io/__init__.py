"""File I/O: atomic writes, CT DICOM series reading and writing, the inference loader and the denoised-CT saver."""
