"""Power-shelf application: PSU sampling, protection, BBU, N+1 redundancy."""
