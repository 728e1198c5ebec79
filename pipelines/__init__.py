"""Building blocks of the instance-segmentation benchmark; `stages/` wires them into DVC stages."""
