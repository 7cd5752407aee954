"""Conformance tests: pltd against numbers and algorithms from outside pltd (reference code, documented formulas, real files)."""
