"""studies/counterexamples"""
