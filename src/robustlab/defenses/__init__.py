"""robustlab.defenses"""
