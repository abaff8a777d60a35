import requests

def test_old(url):
    with requests.get(url + "/items", stream=True) as response:  # fixed
        assert response.status_code == 200
