"""One precompiled INSERT for a new row: the token endpoint's write, without the ORM's compiler.

``Model.save()`` builds its INSERT anew for every row (the query, the compiler, the SQL text),
which costs more CPU than the round trip to PostgreSQL: measured at about 300 µs of the
client-credentials token request's 2 ms (bench/README.md, "Profiles"). ``fast_insert`` writes
the same row the same way Django would (every concrete field's ``pre_save`` and
``get_db_prep_save``, so defaults, ``auto_now`` stamps, checksums and JSON adaptation are
Django's own), with SQL made once per model and process, and sends ``post_save`` as ``save()``
does. No transaction of its own: in autocommit the INSERT is one statement.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import connections, router
from django.db.models import Field, Model
from django.db.models.fields import AutoFieldMixin
from django.db.models.signals import post_save


@cache
def _statement(model: type[Model]) -> tuple[str, tuple[Field[Any, Any], ...]]:
    fields = tuple(field for field in model._meta.local_concrete_fields if not isinstance(field, AutoFieldMixin))
    pk = model._meta.pk
    assert pk is not None
    columns = ", ".join(f'"{field.column}"' for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    # Identifiers from the model's own metadata, values only as parameters.
    sql = f'INSERT INTO "{model._meta.db_table}" ({columns}) VALUES ({placeholders}) RETURNING "{pk.column}"'  # noqa: S608
    return sql, fields


def fast_insert(instance: Model) -> None:
    """INSERT ``instance`` (a new row with an auto primary key) and set its primary key."""
    model = type(instance)
    alias = router.db_for_write(model, instance=instance)
    connection = connections[alias]
    if connection.vendor != "postgresql":  # the embedded SQLite: the ORM's own way
        instance.save(force_insert=True)
        return
    sql, fields = _statement(model)
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        instance.pk = cursor.fetchone()[0]
    instance._state.adding = False
    instance._state.db = alias
    post_save.send(sender=model, instance=instance, created=True, update_fields=None, raw=False, using=alias)
