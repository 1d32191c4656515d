from setuptools import find_packages, setup


def version() -> str:
    scope: dict = {}
    with open('noisemim/version.py') as f:
        exec(f.read(), scope)
    return scope['__version__']


def requirements(path: str = 'requirements.txt') -> list:
    with open(path) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


setup(
    name='noisemim',
    version=version(),
    description='Noise-and-mask pre-training for vision transformers '
    '(an OpenMMLab plugin)',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['noisemim', 'noisemim.*']),
    python_requires='>=3.9',
    install_requires=requirements(),
    license='Apache-2.0',
)
