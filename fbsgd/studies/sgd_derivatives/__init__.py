"""studies/sgd_derivatives"""
