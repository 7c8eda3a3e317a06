"""Reward models that training and serving share: heads, the ensemble, the folder's manifest, rendering."""
