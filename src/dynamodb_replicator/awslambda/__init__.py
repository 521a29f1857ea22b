"""awslambda"""
