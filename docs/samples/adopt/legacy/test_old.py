import requests

def test_old(url):
    assert requests.get(url + "/items", stream=True).status_code == 200
