"""Rate limiting: the limiter port (:mod:`.base`) and its adapters, in process memory
(:mod:`.memory`) and in Redis shared by several API processes (:mod:`.redis`)."""
