"""studies/budgets"""
