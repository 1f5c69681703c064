"""Node classes of the pack, collected for registration.

Each node module defines ``NODES``: a tuple of (node id, class, display name).
Ids carry the ``PV_`` prefix so they never collide with core or other packs.
"""
from . import model_folders

model_folders.register_model_folders()

from . import (apply_sia, doctor, face_detail, identity_prompt, load_face_analysis, load_sia_adapter,  # noqa: E402
               noise_prior, person_regions, region_masks, score_identity, train_identity,
               train_wan_identity)

_MODULES = (load_sia_adapter, apply_sia, identity_prompt, load_face_analysis, train_identity, train_wan_identity,
            score_identity, doctor,
            noise_prior, face_detail, region_masks, person_regions)

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
for _module in _MODULES:
    for _node_id, _cls, _display in _module.NODES:
        NODE_CLASS_MAPPINGS[_node_id] = _cls
        NODE_DISPLAY_NAME_MAPPINGS[_node_id] = _display
