"""vitc.compiler — CLI, pipeline driver, model I/O, recognition, canonical IR, calibration data."""
from onnx_graphsurgeon.logger import G_LOGGER as _G_LOGGER

_G_LOGGER.severity = _G_LOGGER.CRITICAL + 10  # vitc reports its own errors; keep graphsurgeon quiet
