"""The data toolkit: read → validate → normalize → variants → prepare (split, render)."""
