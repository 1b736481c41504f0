from tests.integration.conftest import broker

__all__ = ["broker"]
