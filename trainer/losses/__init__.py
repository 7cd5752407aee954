"""The paper's losses (Lee et al., Sensors 2024, Eqs. 1–10), one small module each."""
