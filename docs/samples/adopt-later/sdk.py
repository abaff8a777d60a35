import requests

def fetch(url):
    return requests.get(url + "/items", stream=True).status_code  # a vendored SDK's leak
