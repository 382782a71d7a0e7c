"""Stage: evaluation. COCO AP (``metrics``, ``wholebody``), runner agreement (``compare``) and ``validate``."""
