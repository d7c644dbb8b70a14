"""The data pipeline: read raw documents, clean, filter, deduplicate, and pack into token shards."""
