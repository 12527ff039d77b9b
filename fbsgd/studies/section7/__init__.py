"""studies/section7"""
