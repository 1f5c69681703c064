"""Where the region masks of two (or more) identities in one video come from.

- :mod:`.simple`: regions sized to the latent: left/right halves and boxes, for the quick case;
- :mod:`.assign`: a steady left-to-right identity assignment of the people found in each frame;
- :mod:`.person_masks`: per-frame region masks from those people (face boxes, or another pack's person mask);
- :mod:`.person_regions`: from a video's frames to the people's region masks, with a preview.

The masks go to *Apply SIA at Late Steps* (``mask``) and to the host's ConditioningSetMask.
"""
from .assign import assign_detections, assign_people, person_boxes
from .errors import RegionError
from .person_masks import person_region_masks
from .person_regions import PersonRegions, find_person_regions
from .simple import box_mask, halves

__all__ = ["RegionError", "assign_detections", "assign_people", "person_boxes", "box_mask",
           "find_person_regions", "halves", "person_region_masks", "PersonRegions"]
