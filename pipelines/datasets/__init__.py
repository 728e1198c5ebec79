"""Dataset import (Datumaro plugins for the owners' layouts), demo data, split and COCO export."""
