"""Latency-aware pruning methods built on latbench (LAP, LayerPrune, SP-LAMP, HILP)."""
