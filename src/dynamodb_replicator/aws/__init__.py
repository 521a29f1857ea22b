"""The I/O shell: the only package that imports boto3/botocore."""
