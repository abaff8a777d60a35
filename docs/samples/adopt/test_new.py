import requests
import sdk

def test_sdk(url):
    assert sdk.fetch(url) == 200

def test_own(url):
    response = requests.get(url + "/items", stream=True)
    assert response.status_code == 200
