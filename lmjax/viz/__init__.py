"""Pictures for people: landmarks drawn on images and response-map panels. Used by the
notebooks and the command lines; imports only `lmjax.core`.
"""
