"""The Spatial Identity Adapter: targets, LoRA math, late-step gate, file format."""
from .adapter import AdapterInfo, SIAAdapter
from .errors import SIAError
from .file_format import load_adapter, save_adapter
from .patch import apply_sia
from .targets import discover_targets

__all__ = ["AdapterInfo", "SIAAdapter", "SIAError", "apply_sia", "discover_targets", "load_adapter", "save_adapter"]
