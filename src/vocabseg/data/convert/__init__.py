"""Converters from raw dataset releases to the layouts the readers expect.

One module per dataset family; ``vocabseg.data.prepare`` dispatches to them.
"""
