"""studies/formats"""
