"""moto's server for DynamoDB and SQS, with three fixes tierup's tests depend on.

1. Thread safety: moto's backends are plain dicts mutated by a threaded WSGI server, so two
   concurrent requests can fail with "dictionary changed size during iteration". Every request
   is served under one lock (the GIL serialises the work anyway).
2. Transaction cost: moto backs up the *whole table* (copy.deepcopy) before every
   TransactWriteItems so it can roll back, which makes each transaction O(table size). Here the
   backup covers only the items the transaction touches; rollback restores exactly those, which
   is the same all-or-nothing behaviour.
3. Query cost: moto answers a Query on the table by scanning every item of the table for the
   partition key. Here a table Query reads only the queried partition, as DynamoDB does, so a
   Query costs what it costs in AWS rather than O(table size). An index Query still visits
   every item (there is no index structure), but compares raw strings and sorts only the
   matches instead of sorting the whole table first.

Usage: python tierup_moto.py [-H HOST] [-p PORT]
"""

import argparse
import copy
import threading
import types

from werkzeug.serving import run_simple

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models import dynamo_type
import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import MotoRequestHandler

_real_deepcopy = copy.deepcopy


def _deepcopy_except_tables(value, memo=None):
    # Inside transact_write_items a whole-table copy is only a rollback backup: skip it.
    if isinstance(value, Table):
        return value
    return _real_deepcopy(value, memo)


dynamodb_models.copy = types.SimpleNamespace(deepcopy=_deepcopy_except_tables)

_original_transact = DynamoDBBackend.transact_write_items


def _key_of(table, op):
    source = op.get("Key") or op.get("Item") or {}
    hash_value = source.get(table.hash_key_attr)
    range_value = source.get(table.range_key_attr) if table.range_key_attr else None
    if hash_value is None:
        return None
    hash_key = dynamo_type.DynamoType(hash_value)
    range_key = dynamo_type.DynamoType(range_value) if range_value is not None else None
    return hash_key, range_key


def _restore(table, hash_key, range_key, item):
    if table.has_range_key:
        bucket = table.items[hash_key]
        if item is None:
            bucket.pop(range_key, None)
            if not bucket:
                table.items.pop(hash_key, None)
        else:
            bucket[range_key] = item
    elif item is None:
        table.items.pop(hash_key, None)
    else:
        table.items[hash_key] = item


def _transact_write_items(self, transact_items):
    backups = []
    for entry in transact_items:
        _, op = next(iter(entry.items()))
        table = self.tables.get(op.get("TableName"))
        if table is None:
            continue
        key = _key_of(table, op)
        if key is None:
            continue
        try:
            current = table.get_item(*key)
        except Exception:
            current = None
        backups.append((table, key, _real_deepcopy(current)))
    try:
        return _original_transact(self, transact_items)
    except Exception:
        for table, (hash_key, range_key), item in reversed(backups):
            _restore(table, hash_key, range_key, item)
        raise


DynamoDBBackend.transact_write_items = _transact_write_items


_original_query = Table.query


def _index_candidates(self, conditions):
    """Items whose index hash attributes equal the queried values, found by comparing the
    raw strings (moto compares DynamoType objects item by item, which is slow on a large
    table under the global lock)."""
    wanted = [(name, getattr(value, "value", None)) for name, value in conditions]
    found = []
    for partition in self.items.values():
        for item in partition.values() if self.has_range_key else [partition]:
            attrs = item.attrs
            ok = True
            for name, target in wanted:
                v = attrs.get(name)
                if v is None or v.value != target:
                    ok = False
                    break
            if ok:
                found.append(item)
    return found


def _query(self, hash_key, *args, **kwargs):
    index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
    conditions = kwargs.get("hash_key_conditions") or []
    if index_name and conditions:
        # Same semantics, fewer items: moto still applies every condition, sort and filter.
        items = _index_candidates(self, conditions)
        self.all_items = lambda: iter(items)
        try:
            return _original_query(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items
    if index_name or hash_key is None:
        return _original_query(self, hash_key, *args, **kwargs)
    partition = self.items.get(hash_key)
    if partition is None:
        items = []
    elif self.has_range_key:
        items = list(partition.values())
    else:
        items = [partition]
    # Requests are serialised (SerializedApp), so shadowing the method for this call is safe.
    self.all_items = lambda: iter(items)
    try:
        return _original_query(self, hash_key, *args, **kwargs)
    finally:
        del self.all_items


Table.query = _query


class SerializedApp:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            # Materialise the body inside the lock: the response iterator may read state.
            return list(self.app(environ, start_response))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True
    run_simple(
        args.host,
        args.port,
        SerializedApp(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
