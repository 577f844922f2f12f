"""Detection and box operations (floor 2): IoU family, NMS family, anchors, coders, assigners."""
