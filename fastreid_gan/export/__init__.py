"""Conversion of published (official) checkpoints into fastreid-gan checkpoints."""
from .converters import (
    ConverterSpec,
    available_converters,
    get_converter,
    load_converter_modules,
    main,
    register_converter,
    save_converted,
)

__all__ = [
    "ConverterSpec",
    "available_converters",
    "get_converter",
    "load_converter_modules",
    "main",
    "register_converter",
    "save_converted",
]
