"""The API's routes, one router per audience: ``submission`` (organisations posting signed events), ``reads`` (one
pupil's record and who looked at it), ``log`` (the public transparency log), ``views`` (aggregate figures), ``admin``
(the operator's reports), ``health``, ``research`` (anonymised exports) and ``plans`` (the public tailored list). Each
module's factory takes what its routes need; ``api.app.create_app`` includes them."""
