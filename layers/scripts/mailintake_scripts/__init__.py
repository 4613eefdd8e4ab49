"""Guard and activity scripts for mailintake, shipped as the scripts layer (see docs/intake.md).

Admins add their own modules here (or in a layer of their own) and name them in the settings
``scripts.guard`` / ``scripts.activity`` as ``module:function``.
"""
