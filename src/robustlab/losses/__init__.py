"""robustlab.losses"""
