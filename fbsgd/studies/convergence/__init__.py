"""studies/convergence"""
