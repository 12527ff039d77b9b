"""studies/correctors"""
