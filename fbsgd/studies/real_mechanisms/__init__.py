"""studies/real_mechanisms"""
