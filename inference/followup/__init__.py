"""Follow-up reading: align a prior study to the current one, match lesions, quote change and guideline.

``model`` holds the records (Comparison, LesionChange, Recommendation);
``space`` the registration's transform (RegistrationResult) and each study's
field of view; ``registration`` aligns two volumes (SimpleITK, imported
lazily); ``matching`` pairs lesions through the transform and decides their
status; ``guidelines`` derives a Fleischner 2017 or Lung-RADS v2022
recommendation from the measured numbers. No Qt, no torch, no workstation imports.
"""
