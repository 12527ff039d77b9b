"""studies/forward_gradients"""
