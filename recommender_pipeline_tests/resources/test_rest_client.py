"""The Confluent Cloud REST client's waits between attempts, without a server."""

from recommender_pipeline.resources.confluent_cloud import RestClient


def test_the_retries_outlast_a_whole_rate_limit_window_even_at_their_shortest():
    client = RestClient("http://127.0.0.1:9", "key", "secret")
    # A 429 without `rateLimit-reset`: exponential backoff, each wait at least half its cap.
    shortest = sum(min(client.max_backoff_seconds, 2**attempt) / 2 for attempt in range(client.max_attempts - 1))
    assert shortest >= 60
    for attempt in range(client.max_attempts - 1):
        cap = min(client.max_backoff_seconds, client.backoff_seconds * 2**attempt)
        waits = [client._wait(None, attempt) for _ in range(50)]
        assert all(cap / 2 <= wait <= cap for wait in waits)
