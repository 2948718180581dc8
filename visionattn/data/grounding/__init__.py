"""Phrase-grounding data (M-DETR's format): images with a caption and phrase → box links whose token spans are
character offsets into the caption.

- :mod:`.records`: :class:`GroundingRecord` and :func:`checked_grounding_record` (every bad-input rule, once);
- :mod:`.coco`: :func:`read_grounding_coco`, M-DETR-style COCO JSON (``images[].caption``,
  ``annotations[].tokens_positive``);
- :mod:`.composed`: records from the composed digit phrases (:class:`visionattn.data.composed.DigitPhrases`) and
  composed tree phrases over deepforest's SOAP tile (:func:`tree_phrase_records`). Both are *composed* phrases,
  not real referring expressions: no such data ships in any package here.
"""

from .coco import read_grounding_coco
from .composed import digit_phrase_records, tree_phrase_records
from .records import GroundingRecord, checked_grounding_record

__all__ = ["GroundingRecord", "checked_grounding_record", "read_grounding_coco", "digit_phrase_records",
           "tree_phrase_records"]
