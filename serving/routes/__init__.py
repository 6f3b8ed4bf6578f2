"""The HTTP routes, one ``APIRouter`` per resource (``create_app`` includes them all):

- ``predict.py``: ``POST /predict``, ``POST /predict/batch`` (the answer model)
- ``forecast.py``: ``POST /forecast``, ``GET /forecasters`` (the market forecasters)
- ``ask.py``: ``POST /ask`` (the LLM; its logic is ``serving/ask.py``)
- ``operations.py``: ``GET /health``, ``/ready``, ``/model``, ``/metrics``

A route takes what it needs through ``serving/deps.py`` and documents each refusal it may answer
(``responses.py``); the work is done by the modules of ``serving/`` it calls.
"""
