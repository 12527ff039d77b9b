"""studies/error_propagation"""
