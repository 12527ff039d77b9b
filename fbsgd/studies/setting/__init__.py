"""studies/setting"""
