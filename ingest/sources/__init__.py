"""Sources: one module per place records come from, each fetching apart from parsing.

``pubmed`` (E-utilities and PubMed XML), ``europepmc`` (REST search pages), ``clinicaltrials``
(API v2 /studies pages) and ``files`` (users' MEDLINE and RIS exports, format sniffing).
Parsers are pure: bytes in, the record dicts of :mod:`ingest.records` out. A source module
imports only :mod:`.http`, :mod:`.checkpoint` and :mod:`ingest.records`, never another
source; :mod:`.formats` is the one place that dispatches among them.
"""
